"""A Starlette app on uvicorn that answers each path by a script, one step per request, so a test
can make an upstream fail in a known sequence (`503, 503, 200`) and count what reached it.

usage: scripted_app.py PORT [NAME]

Any path: the script is the query parameter named after this instance (NAME), else `s`: a
comma-separated list of steps; the n-th request for the path takes the n-th step, the last step
repeats. Steps:
  200, 503, 502, ...    that status, JSON body {"server", "try", "sha256", "len"}
  429:ra=30             that status with Retry-After: 30 (ra=date: an HTTP-date 2 s ahead)
  stall=5               sleep 5 s, then 200
  badjson               200, Content-Type application/json, a body that is not JSON
  close                 drop the connection without answering
GET /__hits?path=P: {"count": N, "sha256": [hash of each request body, in order]} for P.
"""
import asyncio
import email.utils
import hashlib
import json
import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

NAME = sys.argv[2] if len(sys.argv) > 2 else "scripted"
HITS = {}  # path -> [sha256 of each body]


async def hits(request):
    seen = HITS.get(request.query_params.get("path", ""), [])
    return JSONResponse({"count": len(seen), "sha256": seen})


async def scripted(request):
    body = await request.body()
    path = request.url.path
    digest = hashlib.sha256(body).hexdigest()
    seen = HITS.setdefault(path, [])
    seen.append(digest)
    script = request.query_params.get(NAME, request.query_params.get("s", "200"))
    steps = script.split(",")
    step = steps[min(len(seen), len(steps)) - 1]
    payload = {"server": NAME, "try": len(seen), "sha256": digest, "len": len(body)}
    if step.startswith("stall="):
        await asyncio.sleep(float(step.split("=", 1)[1]))
        return JSONResponse(payload)
    if step == "badjson":
        return Response('{"answer": "Sure! Here is your JSON: {', media_type="application/json")
    if step == "close":
        request.scope["drop"][0] = True
        return Response(b"")
    status, _, opts = step.partition(":")
    headers = {}
    if opts.startswith("ra="):
        ra = opts[3:]
        if ra == "date":
            ra = email.utils.formatdate(time.time() + 2, usegmt=True)
        headers["Retry-After"] = ra
    return JSONResponse(payload, status_code=int(status), headers=headers)


class DropMiddleware:
    """Closes the connection, with no response, when a step says `close`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        drop = [False]
        scope["drop"] = drop

        async def send_or_drop(message):
            if drop[0]:
                # uvicorn's `send` is its request cycle's method: close that cycle's transport,
                # so the client sees the connection end before any response byte.
                send.__self__.transport.close()
                return
            await send(message)

        await self.app(scope, receive, send_or_drop)


METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
app = Starlette(routes=[Route("/__hits", hits), Route("/{path:path}", scripted, methods=METHODS)])
app = DropMiddleware(app)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                timeout_keep_alive=30, access_log=False)
