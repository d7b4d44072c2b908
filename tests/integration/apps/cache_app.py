"""An upstream for the response cache tests (issue 14): a Starlette app on uvicorn that counts
the requests it serves per path, so a test can tell what gatehouse answered from its cache.

usage: cache_app.py PORT [NAME]
  GET /__hits?path=P        JSON count of requests seen for path P (not counted itself)
  GET|POST anything else    body "NAME PATH #N" (N: this path's count); query parameters:
      sleep=S   wait S seconds first (from the sleep_from-th request of the path on)
      cc=V      Cache-Control: V
      vary=V    Vary: V (body adds the Vary'd request headers)
      cookie=1  Set-Cookie                status=N respond with N (from the
      status_from-th request of the path on)
      size=N    body of N bytes           sse=1    text/event-stream, chunked, 3 events
      leaky=1   Server and X-Powered-By, as apps leak them
      cc2=V / vary2=V   a second Cache-Control / Vary line (as a middleware adds one)
      host=1    body adds the Host header the app received
      xfo=1     X-Frame-Options: SAMEORIGIN (the app's own security header)
      age=N     Age: N (the response was N seconds old, as from a cache in front of the app)
      echo_id=1 X-Request-ID: the request's (as apps echo it)
  GET /__seen?path=P        JSON list, per request of path P: its method, X-Forwarded-For,
                            X-Request-ID, If-None-Match, If-Modified-Since, Range, and the
                            client port of its connection (which connection carried it)
"""
import asyncio
import collections
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

NAME = sys.argv[2] if len(sys.argv) > 2 else "cache"
HITS = collections.Counter()
SEEN = collections.defaultdict(list)


async def hits(request):
    return JSONResponse({"count": HITS[request.query_params.get("path", "")]})


async def seen(request):
    return JSONResponse(SEEN[request.query_params.get("path", "")])


async def anything(request):
    path = request.url.path
    HITS[path] += 1
    SEEN[path].append({"method": request.method,
                       "x-forwarded-for": request.headers.get("x-forwarded-for"),
                       "x-request-id": request.headers.get("x-request-id"),
                       "if-none-match": request.headers.get("if-none-match"),
                       "if-modified-since": request.headers.get("if-modified-since"),
                       "range": request.headers.get("range"),
                       "port": request.client.port if request.client else None})
    n = HITS[path]
    q = request.query_params
    body = await request.body()
    if "sleep" in q and n >= int(q.get("sleep_from", "1")):
        await asyncio.sleep(float(q["sleep"]))
    if q.get("sse") == "1":
        async def events():
            for i in range(3):
                yield f"data: {i} #{n}\n\n".encode()
                await asyncio.sleep(0.05)
        return StreamingResponse(events(), media_type="text/event-stream")
    text = f"{NAME} {path} #{n}"
    headers = {}
    if "vary" in q:
        headers["Vary"] = q["vary"]
        for name in q["vary"].split(","):
            text += f" {name.strip()}={request.headers.get(name.strip(), '')}"
    if "cc" in q:
        headers["Cache-Control"] = q["cc"]
    if "age" in q:
        headers["Age"] = q["age"]
    if q.get("echo_id") == "1":
        headers["X-Request-ID"] = request.headers.get("x-request-id", "")
    if q.get("xfo") == "1":
        headers["X-Frame-Options"] = "SAMEORIGIN"
    if q.get("leaky") == "1":
        headers["Server"] = "leaky"
        headers["X-Powered-By"] = "x"
    if "vary2" in q:
        for name in q["vary2"].split(","):
            text += f" {name.strip()}={request.headers.get(name.strip(), '')}"
    if q.get("host") == "1":
        text += f" host={request.headers.get('host', '')}"
    if body:
        text += f" body={len(body)}"
    payload = text.encode()
    if "size" in q:
        payload = (payload + b" " + b"x" * int(q["size"]))[: int(q["size"])]
    status_window = int(q.get("status_from", "1")) <= n <= int(q.get("status_to", "1000000"))
    status = int(q.get("status", "200")) if status_window else 200
    if status >= 500:
        payload = b"app error " + payload
    resp = Response(payload, status_code=status, headers=headers, media_type="text/plain")
    for param, field in (("cc2", b"cache-control"), ("vary2", b"vary")):
        if param in q:
            resp.raw_headers.append((field, q[param].encode()))
    if q.get("cookie") == "1":
        resp.set_cookie("session", "secret")
    return resp


app = Starlette(routes=[
    Route("/__hits", hits),
    Route("/__seen", seen),
    Route("/{rest:path}", anything, methods=["GET", "HEAD", "POST"]),
])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                timeout_keep_alive=30, access_log=False,
                proxy_headers=False)  # request.client: the peer itself, with its port
