"""WebSocket upstream (Debian's python3-websockets) for tests/integration/test_edge_websocket.py.

usage: ws_app.py PORT

  any path   WebSocket echo: every text or binary message is sent back as it came, except
             "server-close", which makes the server close (code 4000); on /hello the first
             message is JSON with the handshake's path and request headers
  /plain     answers 200 "plain http" to every request, Upgrade or not (no handshake)
"""
import asyncio
import http
import json
import sys

import websockets


async def process_request(path, headers):
    if path.startswith("/plain"):
        return http.HTTPStatus.OK, [("Content-Type", "text/plain"), ("Content-Length", "10")], \
            b"plain http"
    return None


async def echo(ws, path):
    if path.startswith("/hello"):
        await ws.send(json.dumps({"path": path,
                                  "headers": {k.lower(): v for k, v in ws.request_headers.raw_items()}}))
    async for message in ws:
        if message == "server-close":
            await ws.close(code=4000, reason="bye")
            return
        await ws.send(message)


async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port, process_request=process_request,
                                max_size=8 * 1024 * 1024, ping_interval=None):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
