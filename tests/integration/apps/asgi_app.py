"""A Starlette app served by uvicorn, the way FastAPI apps run in production: HTTP/1.1 with
keep-alive (unlike Flask's development server, which closes every connection), so gatehouse's
pooled connections are really reused.

usage: asgi_app.py PORT [NAME]
  GET /echo, /anything: JSON {"server": NAME, "method", "path", "raw_path", "query", "headers"}
"""
import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

NAME = sys.argv[2] if len(sys.argv) > 2 else "asgi"


async def echo(request):
    body = await request.body()
    data = {
        "server": NAME,
        "method": request.method,
        "path": request.url.path,
        "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
        "query": request.url.query,
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "client": request.client.host if request.client else None,
        "body_len": len(body),
    }
    return Response(json.dumps(data), media_type="application/json")


METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
app = Starlette(routes=[Route("/{path:path}", echo, methods=METHODS)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                timeout_keep_alive=30, access_log=False)
