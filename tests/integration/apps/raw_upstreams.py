"""Hand-written socket upstreams for the gatehouse integration tests (stdlib only).

usage: raw_upstreams.py MODE PORT [ARGS...]

  sse SLEEP          HTTP/1.1 200 text/event-stream, chunked: event "data: 1", sleep SLEEP s,
                     event "data: 2", last chunk. Keep-alive.
  sse-close SLEEP    same events, no Content-Length / Transfer-Encoding: body ends at close.
  refuse-after-accept  accept, then close at once.
  silent             accept and never answer (reads and discards).
  garbage            read a request head, answer "NOT HTTP\\r\\n\\r\\n", close.
  capture FILE       keep-alive HTTP/1.1 server; appends one JSON line per request head received
                     ({"kind": "head"}) and per complete request ({"kind": "request"}: head, body
                     length/sha256, chunk sizes, connection number) to FILE; answers 200 "ok"
                     with Content-Length and a few hop-by-hop headers gatehouse must strip.
                     A request carrying "X-Send-Interim: 1" first gets a 103 interim response.
  slow-body N DELAY  headers with Content-Length N, then the N body bytes one by one, DELAY
                     seconds apart. Keep-alive.
"""
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time

_lock = threading.Lock()
_conn_counter = [0]


class Reader:
    def __init__(self, conn):
        self.conn = conn
        self.buf = b""

    def fill(self):
        data = self.conn.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def read_until(self, delim, limit=1 << 22):
        while delim not in self.buf:
            if len(self.buf) > limit:
                raise EOFError
            self.fill()
        i = self.buf.index(delim) + len(delim)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class Request:
    def __init__(self, head):
        self.head = head
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        self.method = parts[0]
        self.target = parts[1] if len(parts) > 1 else ""
        self.version = parts[2] if len(parts) > 2 else ""
        self.headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.strip().lower(), value.strip()))
        self.body = b""
        self.chunked = False
        self.chunk_sizes = []

    def get(self, name):
        vals = [v for n, v in self.headers if n == name]
        return ", ".join(vals) if vals else None

    def keep_alive(self):
        tokens = [t.strip().lower() for t in (self.get("connection") or "").split(",")]
        if self.version == "HTTP/1.1":
            return "close" not in tokens
        return "keep-alive" in tokens


def read_head(reader):
    while True:
        head = reader.read_until(b"\r\n\r\n")
        if head.strip():
            return Request(head.lstrip(b"\r\n") if head.startswith(b"\r\n") else head)


def read_body(reader, req, on_expect=None):
    te = (req.get("transfer-encoding") or "").lower()
    if "chunked" in te:
        req.chunked = True
        body = b""
        while True:
            line = reader.read_until(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while reader.read_until(b"\r\n") != b"\r\n":
                    pass
                break
            req.chunk_sizes.append(size)
            body += reader.read_exact(size)
            reader.read_exact(2)
        req.body = body
    elif req.get("content-length") is not None:
        req.body = reader.read_exact(int(req.get("content-length").split(",")[0]))


def send_chunk(conn, data):
    conn.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")


# ---------------------------------------------------------------------------------------------


def mode_sse(conn, args):
    sleep = float(args[0]) if args else 3.0
    reader = Reader(conn)
    while True:
        req = read_head(reader)
        read_body(reader, req)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        send_chunk(conn, b"data: 1\n\n")
        time.sleep(sleep)
        send_chunk(conn, b"data: 2\n\n")
        conn.sendall(b"0\r\n\r\n")
        if not req.keep_alive():
            return


def mode_sse_close(conn, args):
    sleep = float(args[0]) if args else 3.0
    reader = Reader(conn)
    req = read_head(reader)
    read_body(reader, req)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                 b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n")
    conn.sendall(b"data: 1\n\n")
    time.sleep(sleep)
    conn.sendall(b"data: 2\n\n")
    conn.shutdown(socket.SHUT_WR)


def mode_refuse_after_accept(conn, args):
    return


def mode_silent(conn, args):
    while conn.recv(65536):
        pass


def mode_garbage(conn, args):
    reader = Reader(conn)
    read_head(reader)
    conn.sendall(b"NOT HTTP\r\n\r\n")


def mode_capture(conn, args):
    path = args[0]
    with _lock:
        _conn_counter[0] += 1
        conn_no = _conn_counter[0]

    def record(obj):
        with _lock:
            with open(path, "a") as f:
                f.write(json.dumps(obj) + "\n")
                f.flush()

    reader = Reader(conn)
    while True:
        req = read_head(reader)
        head_text = req.head.decode("latin-1")
        record({"kind": "head", "conn": conn_no, "head": head_text, "time": time.time()})
        if (req.get("expect") or "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        read_body(reader, req)
        record({
            "kind": "request", "conn": conn_no, "head": head_text,
            "request_line": head_text.split("\r\n", 1)[0],
            "headers": req.headers, "method": req.method, "target": req.target,
            "version": req.version, "chunked": req.chunked, "chunk_sizes": req.chunk_sizes,
            "body_len": len(req.body), "body_sha256": hashlib.sha256(req.body).hexdigest(),
            "body_prefix": req.body[:200].decode("latin-1"), "time": time.time(),
        })
        if req.get("x-send-interim") == "1":
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        keep = req.keep_alive()
        head = ("HTTP/1.1 200 OK\r\n"
                "Content-Type: text/plain\r\n"
                "Content-Length: 2\r\n"
                f"Connection: {'keep-alive' if keep else 'close'}, X-Hop-Resp\r\n"
                "Keep-Alive: timeout=30\r\n"
                "X-Hop-Resp: secret\r\n"
                "Proxy-Authenticate: Basic realm=\"upstream\"\r\n"
                "Trailer: X-Checksum\r\n"
                "X-Normal-Resp: yes\r\n"
                "\r\n")
        conn.sendall(head.encode() + (b"" if req.method == "HEAD" else b"ok"))
        if not keep:
            return


def mode_slow_body(conn, args):
    n = int(args[0]) if args else 5
    delay = float(args[1]) if len(args) > 1 else 0.5
    reader = Reader(conn)
    while True:
        req = read_head(reader)
        read_body(reader, req)
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Length: {n}\r\n\r\n".encode())
        for i in range(n):
            if i:
                time.sleep(delay)
            conn.sendall(bytes([65 + i % 26]))
        if not req.keep_alive():
            return


def mode_late_sse(conn, args):
    """An SSE head at once, the first event `sleep` s later (an LLM's slow first token)."""
    sleep = float(args[0]) if args else 2.0
    reader = Reader(conn)
    req = read_head(reader)
    read_body(reader, req)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                 b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
    time.sleep(sleep)
    send_chunk(conn, b"data: 1\n\n")
    conn.sendall(b"0\r\n\r\n")


def mode_reset_after_head(conn, args):
    """A valid head announcing 100 bytes, then a reset before any body byte: at once, or (with a
    file path argument) once that file exists, so a test can reset after it received the head."""
    trigger = args[0] if args else None
    reader = Reader(conn)
    req = read_head(reader)
    read_body(reader, req)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n")
    if trigger:
        deadline = time.monotonic() + 30
        while not os.path.exists(trigger) and time.monotonic() < deadline:
            time.sleep(0.01)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def mode_answer_once(conn, args):
    """Per connection: the first request is answered (keep-alive, so it is pooled); every request
    is recorded to args[0]; the second one is read and the connection closed with no answer."""
    path = args[0]
    reader = Reader(conn)
    for n in range(2):
        req = read_head(reader)
        read_body(reader, req)
        with _lock:
            with open(path, "a") as f:
                f.write(json.dumps({"method": req.method, "target": req.target, "n": n,
                                    "idempotency_key": req.get("idempotency-key")}) + "\n")
        if n == 0:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    conn.shutdown(socket.SHUT_RDWR)


MODES = {
    "late-sse": mode_late_sse,
    "reset-after-head": mode_reset_after_head,
    "answer-once": mode_answer_once,
    "sse": mode_sse,
    "sse-close": mode_sse_close,
    "refuse-after-accept": mode_refuse_after_accept,
    "silent": mode_silent,
    "garbage": mode_garbage,
    "capture": mode_capture,
    "slow-body": mode_slow_body,
}


def serve(handler, conn, args):
    try:
        handler(conn, args)
    except (EOFError, OSError, ValueError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    mode, port, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    handler = MODES[mode]
    server = socket.create_server(("127.0.0.1", port), backlog=128)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(handler, conn, args), daemon=True).start()


if __name__ == "__main__":
    main()
