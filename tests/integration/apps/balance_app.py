"""Upstreams for the balancing and backpressure tests: they report who answered and how many
requests they were serving at once.

usage: balance_app.py MODE PORT NAME [DELAY_MS] [HOST]
  MODE asgi:  Starlette on uvicorn (keep-alive), each request waits DELAY_MS (asyncio.sleep)
  MODE flask: Flask's threaded server, a sync app: each request blocks a thread DELAY_MS
  HOST: the address to listen on (default 127.0.0.1; "::1" for IPv6)
  GET /stats: {"server", "count", "concurrent", "max_concurrent"} (not counted itself)
  any other path: {"server": NAME, "path": ..., "x_user_id": ...} after DELAY_MS;
    ?ms=N overrides the delay for that request
"""
import json
import sys
import threading
import time

MODE = sys.argv[1]
PORT = int(sys.argv[2])
NAME = sys.argv[3] if len(sys.argv) > 3 else MODE
DELAY_MS = int(sys.argv[4]) if len(sys.argv) > 4 else 0
LISTEN = sys.argv[5] if len(sys.argv) > 5 else "127.0.0.1"

lock = threading.Lock()
state = {"count": 0, "concurrent": 0, "max_concurrent": 0}


def enter():
    with lock:
        state["count"] += 1
        state["concurrent"] += 1
        state["max_concurrent"] = max(state["max_concurrent"], state["concurrent"])


def leave():
    with lock:
        state["concurrent"] -= 1


def stats():
    with lock:
        return json.dumps({"server": NAME, **state})


def answer(path, user):
    return json.dumps({"server": NAME, "path": path, "x_user_id": user})


if MODE == "asgi":
    import asyncio

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def handle(request):
        if request.url.path == "/stats":
            return Response(stats(), media_type="application/json")
        enter()
        try:
            ms = int(request.query_params.get("ms", DELAY_MS))
            if ms:
                await asyncio.sleep(ms / 1000)
            return Response(answer(request.url.path, request.headers.get("x-user-id")),
                            media_type="application/json")
        finally:
            leave()

    app = Starlette(routes=[Route("/{path:path}", handle)])
    uvicorn.run(app, host=LISTEN, port=PORT, log_level="warning", timeout_keep_alive=30,
                access_log=False)
else:
    import logging

    from flask import Flask, request

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = Flask(__name__)

    @app.route("/stats")
    def stats_view():
        return app.response_class(stats(), mimetype="application/json")

    @app.route("/<path:path>")
    def work(path):
        enter()
        try:
            ms = int(request.args.get("ms", DELAY_MS))
            if ms:
                time.sleep(ms / 1000)
            return app.response_class(answer("/" + path, request.headers.get("X-User-ID")),
                                      mimetype="application/json")
        finally:
            leave()

    app.run(host=LISTEN, port=PORT, threaded=True, use_reloader=False)
