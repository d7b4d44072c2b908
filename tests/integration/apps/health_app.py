"""A Starlette app on uvicorn whose health and answers the test can change at run time, for the
target health tests (active checks, outlier ejection, circuit breaker).

usage: health_app.py PORT [NAME]
  GET /health                 the health endpoint: status `health` (200 by default)
  POST /_control              JSON {"health": 500, "status": 500}: set either
  GET /_stats                 JSON {"requests": n, "health_checks": n, "last_check_headers": {..}}
  anything else               JSON {"server": NAME, "path": ...} with status `status` (200)
/_control and /_stats are not counted as requests.
"""
import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

NAME = sys.argv[2] if len(sys.argv) > 2 else "health"
STATE = {"health": 200, "status": 200, "requests": 0, "health_checks": 0,
         "last_check_headers": {}}


def as_json(data, status=200):
    return Response(json.dumps(data), status_code=status, media_type="application/json")


async def health(request):
    STATE["health_checks"] += 1
    STATE["last_check_headers"] = {k.lower(): v for k, v in request.headers.items()}
    return as_json({"status": "ok" if STATE["health"] == 200 else "failing"}, STATE["health"])


async def control(request):
    body = await request.json()
    for key in ("health", "status"):
        if key in body:
            STATE[key] = int(body[key])
    return as_json({"ok": True})


async def stats(request):
    return as_json({k: STATE[k] for k in ("requests", "health_checks", "last_check_headers")})


async def anything(request):
    STATE["requests"] += 1
    return as_json({"server": NAME, "path": request.url.path}, STATE["status"])


METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
app = Starlette(routes=[
    Route("/health", health, methods=["GET"]),
    Route("/_control", control, methods=["POST"]),
    Route("/_stats", stats, methods=["GET"]),
    Route("/{path:path}", anything, methods=METHODS),
])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                timeout_keep_alive=30, access_log=False)
