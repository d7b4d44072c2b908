"""Flask upstream for the gatehouse integration tests.

usage: flask_app.py PORT [NAME]

  /echo[/...] (and any path not listed below), any method: JSON with what the upstream received
  /status/<code>          that status; empty body for 204 and 304
  /slow?s=2               sleeps s seconds, then answers JSON
  /large?n=1048576        n bytes (bytes(range(256)) repeated), with Content-Length
  /stream?n=5&delay=0.2   n lines "chunk <i>\\n", chunked, delay seconds between them
  /sse?n=3&delay=1        text/event-stream, events "data: <i>\\n\\n", delay seconds between them
"""
import hashlib
import json
import sys
import time

from flask import Flask, Response, request

NAME = sys.argv[2] if len(sys.argv) > 2 else "flask"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

app = Flask(__name__)


def pattern(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def echo(**_):
    body = request.get_data(cache=False)
    data = {
        "server": NAME,
        "method": request.method,
        "path": request.path,
        "query": request.query_string.decode("latin-1"),
        "uri": request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI"),
        "http_version": request.environ.get("SERVER_PROTOCOL"),
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "remote_addr": request.remote_addr,
        "body_len": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    return Response(json.dumps(data), mimetype="application/json")


app.add_url_rule("/", "root", echo, methods=METHODS)
app.add_url_rule("/echo", "echo", echo, methods=METHODS)
app.add_url_rule("/<path:anything>", "catch_all", echo, methods=METHODS)


@app.route("/status/<int:code>", methods=METHODS)
def status(code):
    if code in (204, 304):
        return Response(status=code)
    return Response(f"status {code}\n", status=code, mimetype="text/plain")


@app.route("/slow", methods=METHODS)
def slow():
    s = float(request.args.get("s", "2"))
    time.sleep(s)
    return Response(json.dumps({"slept": s, "server": NAME}), mimetype="application/json")


@app.route("/large", methods=METHODS)
def large():
    n = int(request.args.get("n", "1048576"))
    return Response(pattern(n), mimetype="application/octet-stream")


@app.route("/stream", methods=METHODS)
def stream():
    n = int(request.args.get("n", "5"))
    delay = float(request.args.get("delay", "0.2"))

    def gen():
        for i in range(n):
            if i:
                time.sleep(delay)
            yield f"chunk {i}\n".encode()

    return Response(gen(), mimetype="text/plain")


@app.route("/sse", methods=METHODS)
def sse():
    n = int(request.args.get("n", "3"))
    delay = float(request.args.get("delay", "1"))

    def gen():
        for i in range(n):
            if i:
                time.sleep(delay)
            yield f"data: {i}\n\n".encode()

    return Response(gen(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True, use_reloader=False)
