"""Flask upstream for tests/integration/test_edge_*.py, served by uvicorn (WSGI) with HTTP/1.1
keep-alive, so connection reuse shows.

usage: edge_app.py PORT

  /boom                 raises; the error handler answers the traceback as text/plain 500, the way
                        a DEBUG-mode app shows it (the message holds a password to redact)
  /json-error           500 application/json {"detail": ...}
  /big-error?n=100000   500 text/html of n bytes
  /chunked-error?n=3    500 text/plain streamed (chunked), a traceback with n frames
  /unavailable          503 text/html with Retry-After: 7
  /conn                 JSON {"port": the client port of this connection}
  /timed?s=0.2          sleeps s, answers with the app's own X-Process-Time: 99.000
  /status/<code>        that status, text/plain
"""
import json
import sys
import time
import traceback

from flask import Flask, Response, request
import uvicorn
from uvicorn.middleware.wsgi import WSGIMiddleware

METHODS = ["GET", "HEAD", "POST"]
app = Flask(__name__)


@app.errorhandler(Exception)
def debug_page(exc):
    return Response("Internal Server Error\n\n" + traceback.format_exc(), status=500,
                    mimetype="text/plain")


@app.route("/boom", methods=METHODS)
def boom():
    raise RuntimeError("database exploded (dsn postgres://app:hunter2@db:5432/app)")


@app.route("/json-error", methods=METHODS)
def json_error():
    return Response(json.dumps({"detail": "validation failed in the app"}), status=500,
                    mimetype="application/json")


@app.route("/big-error", methods=METHODS)
def big_error():
    n = int(request.args.get("n", "100000"))
    return Response(("<p>" + "x" * n)[:n], status=500, mimetype="text/html")


@app.route("/chunked-error", methods=METHODS)
def chunked_error():
    n = int(request.args.get("n", "3"))  # the generator runs outside the request context

    def gen():
        yield "Traceback (most recent call last):\n"
        for i in range(n):
            yield f"  frame {i}: api_key=sk-live-{i}\n"
        yield "ValueError: streamed failure\n"
    return Response(gen(), status=500, mimetype="text/plain")


@app.route("/unavailable", methods=METHODS)
def unavailable():
    return Response("<h1>down for maintenance</h1>", status=503, mimetype="text/html",
                    headers={"Retry-After": "7"})


@app.route("/timed", methods=METHODS)
def timed():
    time.sleep(float(request.args.get("s", "0.2")))
    return Response("ok", mimetype="text/plain", headers={"X-Process-Time": "99.000"})


@app.route("/status/<int:code>", methods=METHODS)
def status(code):
    if code in (204, 304):
        return Response(status=code)
    return Response(f"status {code}\n", status=code, mimetype="text/plain")


wsgi = WSGIMiddleware(app)


async def asgi(scope, receive, send):
    """/conn answers the client port of this connection (WSGI's environ has no REMOTE_PORT here);
    everything else is the Flask app."""
    if scope["type"] == "http" and scope["path"] == "/conn":
        body = json.dumps({"port": scope["client"][1]}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    await wsgi(scope, receive, send)


if __name__ == "__main__":
    # uvicorn's WSGI interface: a real Flask app with HTTP/1.1 keep-alive, as behind gunicorn's
    # gthread workers (Werkzeug's development server closes every connection).
    uvicorn.run(asgi, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False, timeout_keep_alive=30, proxy_headers=False)
